package bounce
import ("strings";"testing";"time")
func TestSlowProbe(t *testing.T){
 for _, body := range []string{strings.Repeat("<a@b.cd>:\n", 20000), strings.Repeat("x\n\n", 50000), strings.Repeat("550 ", 100000), strings.Repeat("a@b.cd ", 50000)} {
  msg := "From: MAILER-DAEMON@x.org\nSubject: Undeliverable\n\ncould not be delivered\n" + body
  st := time.Now(); rep, _ := Parse(strings.NewReader(msg)); Decide(rep, builtin(t)); t.Log(time.Since(st), len(rep.Recipients))
 }
}
