# pyrkt build: `./configure [options] && make` writes the rkt launcher and the stage1
# images into build/target/bin, as rkt's build did (see ./configure --help).
# The source tree (this Makefile's folder); `make -f SRC/Makefile` builds out of tree,
# in the current folder, reading the config.mk that SRC/configure wrote there.
SRCDIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
-include config.mk

PYTHON ?= $(if $(wildcard $(SRCDIR)/.venv/bin/python),$(SRCDIR)/.venv/bin/python,python3)
STAGE1_FLAVORS ?= coreos,fly,kvm
STAGE1_KVM_HYPERVISORS ?= qemu
STAGE1_KVM_KERNEL ?= tailored
STAGE1_BUNDLE_QEMU ?= yes
TARGET := build/target/bin

RKT := PYTHONPATH=$(SRCDIR)/src $(PYTHON) -m pyrkt
BUNDLE_FLAG := $(if $(filter yes,$(STAGE1_BUNDLE_QEMU)),--bundle-qemu,)

.PHONY: all rkt stage1 kernel clean check

all: rkt stage1

rkt: $(TARGET)/rkt

$(TARGET)/rkt: $(SRCDIR)/Makefile $(wildcard config.mk)
	@mkdir -p $(TARGET)
	@printf '#!/bin/sh\nPYTHONPATH=%s/src exec %s -m pyrkt "$$@"\n' \
		'$(SRCDIR)' '$(PYTHON)' > $@
	@chmod 755 $@
	@echo "make: wrote $@"

stage1:
	$(RKT) stage1 build --flavors=$(STAGE1_FLAVORS) --hypervisors=$(STAGE1_KVM_HYPERVISORS) \
		--kernel=$(STAGE1_KVM_KERNEL) $(BUNDLE_FLAG) --output=$(TARGET)

kernel:
	$(RKT) stage1 kernel

check:
	cd $(SRCDIR) && bash scripts/test.sh

clean:
	rm -rf build config.mk
