module kubento.dev/kind/runc-shim

go 1.24.0
