# kage: one Makefile, no generated build system.
#
#   make                      build ./kage (and libkage.a, the test tools)
#   make test                 install what is missing, build, run every test
#   make SAN=address,undefined test     the same under ASan+UBSan
#   make SAN=thread test-threads        the threaded tests under TSan
#   make bench | make demo    see README.md (make bench BENCH_ARGS=--quick)
#
# Objects of each flavour live in their own directory under build/, so a
# sanitizer build never mixes with the release one.

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
SAN     ?=
comma   := ,

FLAVOUR := $(if $(SAN),san-$(subst $(comma),-,$(SAN)),release)

# `make V=1` shows every command; by default one short line per step.
ifeq ($(V),1)
  Q :=
  say = @true
else
  Q := @
  say = @printf '  %-6s %s\n'
endif
B       := build/$(FLAVOUR)

CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
CPPFLAGS_KAGE := -std=gnu11 -D_GNU_SOURCE -Isrc -MMD -MP
LDLIBS  := -luring -ljansson -lz -ldl -lm -lpthread

ifneq ($(SAN),)
  CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SAN)
endif

# llhttp: Debian 12 ships llhttp 8.1.0 as C sources (node-llhttp). They are
# compiled in strict mode; kage adds its own obs-fold guard (src/http.c).
# A system libllhttp >= 9 (strict by default, later smuggling fixes) is
# linked instead where pkg-config offers one.
LLHTTP_SYS := $(shell pkg-config --atleast-version=9 libllhttp 2>/dev/null && echo yes)
ifeq ($(LLHTTP_SYS),yes)
  LLHTTP_CFLAGS := $(shell pkg-config --cflags libllhttp) -DKAGE_LLHTTP_SYSTEM=1
  LDLIBS        += $(shell pkg-config --libs libllhttp)
  LLHTTP_OBJ    :=
else
  LLHTTP_SRC    ?= /usr/share/llhttp
  LLHTTP_CFLAGS := -I/usr/share/include/llhttp -DLLHTTP_STRICT_MODE=1
  LLHTTP_OBJ    := $(B)/llhttp/llhttp.o $(B)/llhttp/api.o $(B)/llhttp/http.o
endif

LIB_SRC   := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ   := $(LIB_SRC:src/%.c=$(B)/src/%.o)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
TOOL_SRC  := $(wildcard tools/*.c)
TOOL_BIN  := $(TOOL_SRC:tools/%.c=$(B)/tools/%)
# Hooks as shared objects: the examples, and the ones only tests load.
PLUGIN_SRC := $(wildcard tools/plugins/*.c tests/plugins/*.c)
PLUGIN_SO  := $(addprefix $(B)/plugins/,$(notdir $(PLUGIN_SRC:.c=.so)))
VERSION   := $(shell sed -n 's/^\#define KAGE_VERSION *"\(.*\)"/\1/p' src/config.h)

ALL_CFLAGS = $(CPPFLAGS_KAGE) $(LLHTTP_CFLAGS) $(WARN) $(CFLAGS)

.PHONY: all deps lint fuzz soak test test-unit test-integration test-threads tsan-canary bench demo clean install
.DEFAULT_GOAL := all

all: $(B)/kage $(TOOL_BIN) $(PLUGIN_SO) $(if $(SAN),,kage)

# --- dependencies ----------------------------------------------------------
# A stamp per machine state: when a header or tool is missing, install.
DEPS_STAMP := build/.deps-ok
DEPS_FILES := /usr/include/liburing.h /usr/share/llhttp/llhttp.c \
              /usr/include/CUnit/CUnit.h /usr/include/jansson.h /usr/include/zlib.h
$(DEPS_STAMP):
	@for f in $(DEPS_FILES); do [ -e $$f ] || missing=1; done; \
	 for c in curl wrk ab python3 pkg-config cppcheck; do command -v $$c >/dev/null || missing=1; done; \
	 if [ -n "$$missing" ]; then tools/install-deps; fi
	@mkdir -p build && touch $@
deps: $(DEPS_STAMP)

# --- objects -----------------------------------------------------------------
# The dashboard is edited as HTML; the binary carries the same bytes.
src/dashboard.c: src/dashboard.html tools/embed_dashboard.py
	$(say) GEN $@
	$(Q)python3 tools/embed_dashboard.py

$(B)/src/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) CC $<
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

# llhttp's generated code is not ours to warn about.
$(B)/llhttp/%.o: $(LLHTTP_SRC)/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) CC $<
	$(Q)$(CC) -std=gnu11 $(LLHTTP_CFLAGS) $(CFLAGS) -w -c -o $@ $<

$(B)/libkage.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@rm -f $@
	$(say) AR $@
	$(Q)ar rcs $@ $^

# Plugins resolve the kage_headers_* functions against the binary: export
# those (and only those) from it.
$(B)/kage: $(B)/src/main.o $(B)/libkage.a tools/kage.dynlist
	$(say) LD $@
	$(Q)$(CC) $(LDFLAGS) -Wl,--dynamic-list=tools/kage.dynlist -o $@ $(B)/src/main.o \
	    $(B)/libkage.a $(LDLIBS)

kage: $(B)/kage
	$(Q)ln -f $< $@

$(B)/tools/%: tools/%.c $(B)/libkage.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) LD $@
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libkage.a $(LDLIBS)

$(B)/plugins/%.so: tools/plugins/%.c src/kage.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) SO $@
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $<

$(B)/plugins/%.so: tests/plugins/%.c src/kage.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) SO $@
	$(Q)$(CC) $(ALL_CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $<

$(B)/tests/%: tests/unit/%.c $(B)/libkage.a | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(say) LD $@
	$(Q)$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libkage.a $(LDLIBS) -lcunit

# --- tests -------------------------------------------------------------------
test: test-unit test-integration

test-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

test-integration: $(B)/kage $(TOOL_BIN) $(PLUGIN_SO)
	python3 tests/integration/run.py --build $(B)

# The tests that exercise threads, for the TSan flavour.
test-threads: $(UNIT_BIN) $(B)/kage $(TOOL_BIN) $(PLUGIN_SO) tsan-canary
	$(B)/tests/test_spsc
	python3 tests/integration/run.py --build $(B) --threads-only

# Proof that the TSan job sees races at all: the queue built with its
# publication relaxed (SPSC_BROKEN) must be reported. Only meaningful
# with SAN=thread.
tsan-canary: $(B)/libkage.a
	@mkdir -p $(B)/tests
	$(say) LD $(B)/tests/spsc-broken
	$(Q)$(CC) $(ALL_CFLAGS) -DSPSC_BROKEN $(LDFLAGS) -o $(B)/tests/spsc-broken tests/unit/test_spsc.c \
	    $(B)/libkage.a $(LDLIBS) -lcunit
	@if [ "$(SAN)" != thread ]; then echo "tsan-canary: needs SAN=thread"; exit 1; fi
	@if $(B)/tests/spsc-broken > $(B)/tests/spsc-broken.log 2>&1; then \
	    echo "tsan-canary: TSan did not report the broken queue"; exit 1; fi
	@grep -q 'ThreadSanitizer: data race' $(B)/tests/spsc-broken.log
	@echo "tsan-canary: the deliberately broken queue is reported by TSan, as it must be"

# Static analysis: any finding fails.
lint: | $(DEPS_STAMP)
	cppcheck --enable=warning,performance,portability --inline-suppr --quiet --std=c11 \
	    --error-exitcode=1 -D_GNU_SOURCE -DLLHTTP_STRICT_MODE=1 -Isrc -I/usr/share/include/llhttp \
	    --suppress=missingIncludeSystem src/*.c tools/*.c tools/plugins/*.c tests/plugins/*.c
	@echo "lint: cppcheck found nothing"

# libFuzzer targets (clang, installed by the script when missing): replay
# every seed, then fuzz each target FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz: | $(DEPS_STAMP)
	tests/fuzz/run.sh --replay
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

# Three parts, each against references measured in the same run: the
# proxy against direct and nginx; what the admin and a no-op plugin cost the
# master path; the comparator's capacity against the traffic it is fed.
bench: all
	tools/install-deps --bench
	python3 bench/run.py --build $(B) $(BENCH_ARGS)
	python3 bench/cost.py --build $(B) --modes off,on,scraped,noop-plugin $(COST_ARGS)
	python3 bench/comparator.py --build $(B) $(COMPARATOR_ARGS)

# 10 minutes of mixed traffic against a fault-injecting shadow, then checks
# that kage came back to rest (tools/soak.py --help).
soak: all
	python3 tools/soak.py --build $(B) $(SOAK_ARGS)

demo: all
	python3 tools/demo.py --build $(B) $(DEMO_ARGS)

install: $(B)/kage $(B)/libkage.a
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	           $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(B)/kage $(DESTDIR)$(PREFIX)/bin/kage
	install -m 644 $(B)/libkage.a $(DESTDIR)$(PREFIX)/lib/libkage.a
	install -m 644 src/kage.h $(DESTDIR)$(PREFIX)/include/kage.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBS@|$(LDLIBS)|' -e 's|@VERSION@|$(VERSION)|' \
	    tools/kage.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/kage.pc

clean:
	rm -rf build kage

-include $(wildcard $(B)/src/*.d $(B)/tests/*.d $(B)/tools/*.d)
