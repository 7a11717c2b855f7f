// Package config owns facteur's main configuration file: its schema (the
// YAML keys are a public contract), its defaults (Default is the only place
// a default is written) and its validation. Load = Default, then a strict
// decode of the file over it (unknown keys are errors naming file, line and
// key), then Validate, which reports every problem at once.
//
// Only cmd/ reads files and the environment; other packages receive a
// *Config (or values taken from it) from their constructors.
package config
