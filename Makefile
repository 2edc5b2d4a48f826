# basalt — build, test, run.  See README.md.
#
#   make run        install missing Debian packages, build, start the main job
#   make test       build everything and run the whole test suite
#   make test-san   unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make deps       install missing Debian packages (apt-get, as root or via sudo)
#   make demo       reinforcement fine-tuning demo: held-out reward before and after

CC      ?= gcc
SAN     ?= 0
PKGS    := libmicrohttpd jansson libpcre2-8 openblas libcurl sqlite3 yaml-0.1 libpq hiredis

ifeq ($(SAN),1)
BUILD   := build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   := build
OPT     := -O2 -g
LDSAN   :=
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Error messages are truncated on purpose to fit bs_error; silence that warning.
CFLAGS  += -std=c17 $(OPT) -Wall -Wextra -Werror -Wno-format-truncation -D_GNU_SOURCE -pthread -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lunistring -lm -pthread
LDFLAGS += $(LDSAN)

LIB_SRCS  := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRCS  := $(sort $(wildcard src/cli/*.c))
TEST_SRCS := $(sort $(wildcard tests/*/test_*.c))
TEST_HELPERS := $(sort $(wildcard tests/support/*.c))
# Programs the tests start (mock upstreams): built, never run by tests/run.sh.
MOCK_SRCS := $(sort $(wildcard tests/*/mock_*.c))

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS  := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
HELPER_OBJS := $(TEST_HELPERS:%.c=$(BUILD)/obj/%.o)
TEST_BINS := $(TEST_SRCS:%.c=$(BUILD)/%) $(MOCK_SRCS:%.c=$(BUILD)/%)

LIB := $(BUILD)/libbasalt.a
BIN := $(BUILD)/basalt

.PHONY: all deps run test test-san unit clean bench demo
.SECONDARY:
all: $(BIN) $(TEST_BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJS) $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(HELPER_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

deps:
	@sh tools/deps.sh

# The main job: build the embedded default model once (docs/default-model.md),
# then serve it.
run: deps
	@$(MAKE) --no-print-directory $(BIN)
	$(BIN) run

# Reinforcement fine-tuning end to end through the public API
# (examples/demo/README.md): held-out reward before and after.
demo: deps
	@$(MAKE) --no-print-directory $(BIN)
	$(BIN) demo

test: deps
	@$(MAKE) --no-print-directory all
	@sh tests/run.sh $(BUILD)

# Unit tests (C test binaries) only, under ASan + UBSan.
test-san:
	@$(MAKE) --no-print-directory SAN=1 all
	@BASALT_UNIT_ONLY=1 sh tests/run.sh build-san

bench: $(BIN)
	@sh bench/run.sh $(BIN)

clean:
	rm -rf build build-san

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(HELPER_OBJS:.o=.d) $(TEST_SRCS:%.c=$(BUILD)/obj/%.d) $(MOCK_SRCS:%.c=$(BUILD)/obj/%.d)
