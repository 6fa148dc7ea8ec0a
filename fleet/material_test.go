package fleet_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/natscert/natscert/fleet"
	"github.com/natscert/natscert/pki"
)

// TestMaterialRules checks the classification rule of fleet.Material
// against what a real server reports: leaves by fingerprint, spki
// fingerprints, CAs for supplied leaves only, and directories.
func TestMaterialRules(t *testing.T) {
	f := newFixture(t, 1)
	byLeaf := issue(t, f.oldCA, "by-leaf")    // --old leaf file
	bySPKI := issue(t, f.oldCA, "by-spki")    // --old spki fingerprint
	byCA := issue(t, f.newCA, "by-ca")        // --new CA + --leaves
	fromDir := issue(t, f.newCA, "from-dir")  // --new directory
	unsupplied := issue(t, f.newCA, "nobody") // issued by the new CA, never supplied: unknown
	for _, l := range []*pki.Leaf{byLeaf, bySPKI, byCA, fromDir, unsupplied} {
		f.mustDial(t, f.c.Servers[0].ClientURL, l, l.Cert.Subject.CommonName)
	}
	f.waitConns(t, 5)

	dir := t.TempDir()
	leafFile := filepath.Join(dir, "old-leaf.pem")
	if err := os.WriteFile(leafFile, byLeaf.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "new-ca.pem")
	if err := os.WriteFile(caFile, f.newCA.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	newDir := filepath.Join(dir, "new")
	if err := os.Mkdir(newDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fromDir.WriteFiles(filepath.Join(newDir, "tls.crt"), filepath.Join(newDir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	oldM, err := fleet.ReadMaterial(leafFile, "sha256:"+pki.SPKISHA256(bySPKI.Cert))
	if err != nil {
		t.Fatal(err)
	}
	newM, err := fleet.ReadMaterial(caFile, newDir)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := fleet.New(fleet.Monitor(f.c.MonitorURLs()...), fleet.WithOld(oldM), fleet.WithNew(newM),
		fleet.WithKnownLeaves(byCA.Cert), fleet.WithSettle(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := obs.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]fleet.Class{"by-leaf": fleet.ClassOld, "by-spki": fleet.ClassOld, "by-ca": fleet.ClassNew,
		"from-dir": fleet.ClassNew, "nobody": fleet.ClassUnknown}
	for _, c := range st.Connections {
		if c.Class != want[c.Name] {
			t.Errorf("%s: %s, want %s", c.Name, c.Class, want[c.Name])
		}
	}

	if _, err := fleet.ReadMaterial(filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("a missing file read as material")
	}
	if _, err := fleet.New(fleet.Monitor("http://127.0.0.1:1"), fleet.WithOld(oldM), fleet.WithNew(oldM)); !errors.Is(err, fleet.ErrAmbiguous) {
		t.Errorf("same leaf old and new: %v, want ErrAmbiguous", err)
	}
}
