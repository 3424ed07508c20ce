// Package validate checks tether's Kubernetes manifests (deploy/kubernetes)
// and its container recipe (deploy/Containerfile) without a cluster or a
// container runtime.
//
// Every manifest decodes strictly into the typed Kubernetes API objects
// (unknown, duplicated or misspelt fields are errors, as with
// `kubectl apply --validate=strict`), and so does kustomize's build of
// them (the code of `kubectl apply -k`). The tests then check the objects
// against each other (selectors, ports, probes, the SRV name of the nodes'
// headless Service) and against tether itself: every flag and configuration
// key the Deployment uses exists in `tether --help`, and the built binary,
// started with the Deployment's arguments and configuration on loopback,
// answers the probes' paths. The image's build command must give a static
// binary.
//
// It is a module of its own, so that tether's go.mod stays free of
// Kubernetes' dependencies, outside the repository's workspace (go.work):
// `make test-deploy` runs it with GOWORK=off, and builds tether as the
// image does, from tether's go.mod alone.
package validate
