package config

import "facteur/strictyaml"

// Error is a configuration problem at a place in a file:
// `facteur.yaml:3: unknown key "prot" in delivery`. It is the error type of
// every facteur YAML file (facteur/strictyaml); Load, Parse and Validate
// return a strictyaml.Errors of them, every problem at once.
type Error = strictyaml.Error
