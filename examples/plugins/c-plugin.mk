# Build rules for a C plugin, included by the Makefile of each C plugin folder (allowlist-c,
# c-starter) so that `make` there builds $(BUILD)/$(NAME).wasm:
#   1. wit-bindgen c generates plugin.h, plugin.c and plugin_component_type.o from the WIT;
#   2. clang (wasm32-wasi, reactor) compiles and links them with the plugin against wasi-libc;
#   3. wasm-tools turns the core module into a component with the WASI preview1 reactor adapter.
# The adapter, once (from examples/plugins):
#   cargo run --quiet --manifest-path wasi-adapter/Cargo.toml -- wasi_snapshot_preview1.reactor.wasm
NAME ?= $(notdir $(CURDIR:%/=%))
NAME := $(patsubst %-c,%,$(NAME))
WIT ?= ../../../plugin-sdk/wit
BUILD ?= build
ADAPTER ?= ../wasi_snapshot_preview1.reactor.wasm
CC := clang
CFLAGS ?= -O2 -Wall -Wextra
SDK := $(dir $(lastword $(MAKEFILE_LIST)))c-sdk
WASI_CFLAGS := --target=wasm32-wasi -mexec-model=reactor

SOURCES := $(wildcard *.c) $(wildcard $(SDK)/*.c)

$(BUILD)/$(NAME).wasm: $(BUILD)/$(NAME).core.wasm $(ADAPTER)
	wasm-tools component new $< --adapt wasi_snapshot_preview1=$(ADAPTER) -o $@
	wasm-tools validate $@

$(BUILD)/$(NAME).core.wasm: $(SOURCES) $(BUILD)/gen/plugin.c
	$(CC) $(WASI_CFLAGS) $(CFLAGS) -I$(BUILD)/gen -I$(SDK) -o $@ $(SOURCES) $(BUILD)/gen/plugin.c \
		$(BUILD)/gen/plugin_component_type.o

$(BUILD)/gen/plugin.c: $(wildcard $(WIT)/*.wit)
	mkdir -p $(BUILD)/gen
	wit-bindgen c $(WIT) --world plugin --out-dir $(BUILD)/gen

clean:
	rm -rf $(BUILD)

.PHONY: clean
