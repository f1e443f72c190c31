// Package disk checks a local disk against a declared partition layout,
// plans the change and applies it without losing data.
package disk
