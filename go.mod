module facteur

go 1.26
