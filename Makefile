# pyrkt build: `./configure [options] && make` writes rkt and the stage1 images into
# build/target/bin, as rkt's build did (see ./configure --help); that rkt runs the
# default stage1 ./configure chose when no --stage1-* flag is given.
# The source tree (this Makefile's folder); `make -f SRC/Makefile` builds out of tree,
# in the current folder, reading the config.mk that SRC/configure wrote there.
SRCDIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
-include config.mk

PYTHON ?= $(if $(wildcard $(SRCDIR)/.venv/bin/python),$(SRCDIR)/.venv/bin/python,python3)
STAGE1_FLAVORS ?= coreos,fly,kvm
STAGE1_DEFAULT_FLAVOR ?=
STAGE1_DEFAULT_NAME ?=
STAGE1_DEFAULT_VERSION ?=
STAGE1_DEFAULT_LOCATION ?=
STAGE1_DEFAULT_IMAGES_DIR ?=
CONFIGURE_ARGS ?=
STAGE1_KVM_HYPERVISORS ?= qemu
STAGE1_KVM_KERNEL ?= tailored
STAGE1_BUNDLE_QEMU ?= yes
TARGET := build/target/bin

PY := PYTHONPATH=$(SRCDIR)/src $(PYTHON)
RKT := $(PY) -m pyrkt
BUNDLE_FLAG := $(if $(filter yes,$(STAGE1_BUNDLE_QEMU)),--bundle-qemu,)

.PHONY: all rkt stage1 kernel clean check

all: rkt stage1

rkt: $(TARGET)/rkt

# The built rkt: a launcher for this source tree that carries the default stage1 that
# ./configure chose (pyrkt/cli/launcher.py) and finds the images beside it. The tree's
# bytecode is written now: with PYTHONDONTWRITEBYTECODE=1 in the environment, every rkt
# command would otherwise compile pyrkt again (tens of milliseconds).
$(TARGET)/rkt: $(SRCDIR)/Makefile $(wildcard config.mk) $(SRCDIR)/src/pyrkt/cli/launcher.py
	@mkdir -p $(TARGET)
	@$(PYTHON) -m compileall -q -j 0 $(SRCDIR)/src >/dev/null
	@$(PY) -m pyrkt.cli.launcher --built=$@ --flavors='$(STAGE1_FLAVORS)' \
		--hypervisors='$(STAGE1_KVM_HYPERVISORS)' --bundle-qemu='$(STAGE1_BUNDLE_QEMU)' \
		--default-flavor='$(STAGE1_DEFAULT_FLAVOR)' --default-name='$(STAGE1_DEFAULT_NAME)' \
		--default-version='$(STAGE1_DEFAULT_VERSION)' \
		--default-location='$(STAGE1_DEFAULT_LOCATION)' \
		--images-dir='$(STAGE1_DEFAULT_IMAGES_DIR)' --configure='$(CONFIGURE_ARGS)'

stage1:
ifneq ($(strip $(STAGE1_FLAVORS)),)
	$(RKT) stage1 build --flavors=$(STAGE1_FLAVORS) --hypervisors=$(STAGE1_KVM_HYPERVISORS) \
		--kernel=$(STAGE1_KVM_KERNEL) $(BUNDLE_FLAG) --output=$(TARGET)
endif

kernel:
	$(RKT) stage1 kernel

check:
	cd $(SRCDIR) && bash scripts/test.sh

clean:
	rm -rf build config.mk
