# microdash: the README's two commands are `make run` and `make test`.
.PHONY: run test bench dashboard build images compose-test clean-data

run:            ## microdash on embedded defaults + dashboard + a local agent
	bash scripts/run.sh

test:           ## every check and test; installs what it needs
	bash scripts/test.sh

bench:          ## benchmarks; writes docs/benchmarks.md (one section: make bench ARGS='--only mqtt')
	bash scripts/bench.sh $(ARGS)

dashboard:      ## build dashboard/dist (embedded into release builds)
	bash -c 'source scripts/lib.sh && build_dashboard "$$PWD"'

images:         ## the three images (microdash, -agent, -operator; tag TAG=dev), offline from host-built binaries
	bash scripts/images.sh

compose-test:   ## the test command's container step alone: images, the Compose stack up, its BDD scenarios, down
	bash scripts/compose-test.sh

build: dashboard
	cargo build --release -p microdash
	cargo build --profile agent -p microdash-agent

clean-data:     ## forget the local embedded database and tokens
	rm -rf data

# --- Kubernetes cluster (kind, node image built offline; docs/kubernetes-ci.md) ---
.PHONY: cluster-up cluster-e2e cluster-down

cluster-up:     ## kind cluster microdash-ci; kubeconfig in .cache/cluster/kubeconfig
	bash scripts/cluster/up.sh

cluster-e2e:    ## install microdash on the cluster (namespace microdash) and run the end-to-end test
	bash scripts/cluster/e2e.sh

cluster-down:   ## delete the kind cluster
	bash scripts/cluster/down.sh
