# Thin wrapper around CMake: make deps | build | test | run | bench | clean.
BUILD ?= build
SANITIZE ?= 0
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(SANITIZE),1)
BUILD := build-asan
CMAKE_FLAGS += -DALORA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DENABLE_CUDA=OFF
endif

.PHONY: deps build test run bench clean format

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

run: build
	@bash scripts/run.sh $(BUILD)

bench: build
	@bash bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf build build-asan
