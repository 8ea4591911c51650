# latchkey: `make` builds, `make test` runs every test, `make demo` shows it working.
# Both test and demo first install what is missing (scripts/bootstrap, npm ci), quietly.
SHELL := /bin/bash
PREFIX ?= /usr/local
DESTDIR ?=
NODE_DEPS := node_modules/.latchkey-stamp
ADDON := native/addon/build/Release/latchkey.node
TS_STAMP := dist/.stamp
# node-gyp does not read ~/.npmrc: point it at the local Node headers so it never downloads any.
NODEDIR ?= $(shell d=$$(npm config get nodedir 2>/dev/null); [ -n "$$d" ] && [ "$$d" != undefined ] && echo $$d || { [ -f /usr/include/node/node_api.h ] && echo /usr; })
TS_SOURCES := $(shell find src test scripts -name '*.ts' -not -path '*/node_modules/*' 2>/dev/null)

.PHONY: all build bootstrap deps lint test test-unit test-c test-integration demo bench soak fleet fuzz install uninstall deb man clean

all: build

bootstrap:
	@scripts/bootstrap

$(NODE_DEPS): package.json package-lock.json
	@scripts/npm-deps
	@touch $@

deps: $(NODE_DEPS)

src/protocol/generated.ts native/common/latchkey_proto.h: src/protocol/spec.json scripts/gen-protocol.mjs scripts/gen-map.mjs
	@node scripts/gen-protocol.mjs

$(TS_STAMP): $(NODE_DEPS) $(TS_SOURCES) src/protocol/generated.ts tsconfig.json
	@node_modules/.bin/tsc -p tsconfig.json
	@touch $@

$(ADDON): $(NODE_DEPS) $(wildcard native/addon/*.c native/addon/*.cc native/addon/*.h native/addon/binding.gyp native/common/safedir.[ch] native/common/lk_map*.[ch])
	@cd native/addon && npm_config_nodedir=$(NODEDIR) ../../node_modules/.bin/node-gyp rebuild --loglevel=error >/dev/null

# The man pages, dist/man/NAME.5 and NAME.8 (what make install and make deb ship), generated from
# the sources the programs read: scripts/gen-man.mjs lists them. A second or so.
MAN_STAMP := dist/man/.stamp
MAN_SOURCES := scripts/gen-man.mjs etc/latchkey.conf package.json \
               $(wildcard etc/*.[58].md src/*/*.[58].md pam/*.[58].md native/*/*.[58].md)
$(MAN_STAMP): $(TS_STAMP) $(ADDON) $(MAN_SOURCES)
	@node scripts/gen-man.mjs dist/man
	@touch $@

man: $(MAN_STAMP)

build: $(TS_STAMP) $(ADDON) native/common/latchkey_proto.h $(MAN_STAMP)
	@$(MAKE) -s -C native
	@$(MAKE) -s -C native/rootd
	@$(MAKE) -s -C pam

# Static checks, a few seconds; scripts/run-tests runs them first. tsc strict without emitting,
# biome's lint rules (biome.json: src/, test/, scripts/*.mjs; no formatter), and clang-format
# (.clang-format) over every C file.
lint: $(NODE_DEPS) src/protocol/generated.ts
	@node_modules/.bin/tsc -p tsconfig.json --noEmit
	@node_modules/.bin/biome lint --no-errors-on-unmatched
	@$(MAKE) -s -C native format-check

test: bootstrap build
	@scripts/run-tests

demo: bootstrap build
	@scripts/demo

bench: bootstrap build
	@scripts/bench $(BENCH_ARGS)

# SOAK_SECONDS (default 600) long; SOAK_ARGS=--sweep for the "how much does it take" table.
soak: bootstrap build
	@SOAK_SECONDS=$${SOAK_SECONDS:-600} scripts/soak $(SOAK_ARGS)

# FLEET_HOSTS (default 20) hosts in their own namespaces against one user service, FLEET_SCALE
# (default 60: ttl 60 s), FLEET_SCENARIOS (steady,restart,outage,popular); FLEET_ARGS for the rest
# (--before FILE adds an earlier run's column). About 5 minutes; build/fleet/ gets the table.
fleet: bootstrap build
	@scripts/fleet $(FLEET_ARGS)

# Every parser of untrusted input, longer than `make test` does: the C targets (reply parsers, map
# reader, latchkey-rootd's frames, the PAM module) FUZZ_SECONDS each (default 60), then the TS
# properties (test/unit/property-fuzz.test.ts, userdb-varlink.test.ts) with FUZZ_SCALE times
# their runs (default 50).
# FUZZ_SEED (default 1919) fixes both. Findings land in native/build/fuzz-found/,
# pam/build/fuzz-found/ and build/fuzz-found/ (TS); once fixed, copy each input into
# test/fuzz/regressions/<target>/, which `make test` replays every time.
fuzz: bootstrap build
	@$(MAKE) -s -C native fuzz FUZZ_SECONDS=$${FUZZ_SECONDS:-60} FUZZ_SEED=$${FUZZ_SEED:-1919}
	@LK_PROPERTY_SEED=$${FUZZ_SEED:-1919} LK_PROPERTY_SCALE=$${FUZZ_SCALE:-50} \
	    node --test --test-reporter=spec dist/test/unit/property-fuzz.test.js dist/test/unit/userdb-varlink.test.js

# Runtime files only (the compiled JS, the runtime node_modules, the native parts); the layout is
# in scripts/install's header. `make uninstall` removes what it put there, keeping
# /etc/latchkey/latchkey.conf unless PURGE=1.
install: build
	@scripts/install "$(DESTDIR)" "$(PREFIX)"

uninstall:
	@scripts/uninstall "$(DESTDIR)" "$(PREFIX)" $(if $(PURGE),--purge)

# build/deb/latchkey_<version>_<arch>.deb (DEB_OUT=DIR elsewhere), from the built tree with
# dpkg-deb (scripts/deb/build says why); man pages from dist/man/ (make build makes them).
deb: build
	@scripts/deb/build $(DEB_OUT)

clean:
	rm -rf dist native/addon/build
	@$(MAKE) -s -C native clean
	@$(MAKE) -s -C pam clean
	@$(MAKE) -s -C native/rootd clean
