# Thin wrapper around CMake: make deps | build | test | run | bench | fuzz | clean.
BUILD ?= build
SANITIZE ?= 0
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(SANITIZE),1)
BUILD := build-asan
CMAKE_FLAGS += -DALORA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DENABLE_CUDA=OFF
endif

.PHONY: deps build test test-deploy run train-demo bench bench-rag fuzz clean format

deps:
	@bash scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The docker-compose deployment end to end in Docker (image build, up, HTTP parity, --scale, base
# restarts, down -v; minutes): tests/deploy/compose_test.sh, which `make test` skips. Needs a docker
# daemon and docker-compose (v1) or `docker compose` (v2); exits 77 when there is none.
test-deploy: build
	ALORA_TEST_DEPLOY=1 ALORA_BIN=$(abspath $(BUILD))/alora bash tests/deploy/compose_test.sh

run: build
	@bash scripts/run.sh $(BUILD)

# Trains a real intrinsic on ../shared/models/aidreams260K with `alora train` and serves it through
# the cluster (examples/train_intrinsic.sh, docs/train.md).
train-demo: build
	@BUILD=$(BUILD) bash examples/train_intrinsic.sh

bench: build
	@bash bench/run.sh $(BUILD)

# The RAG workload (bench/rag_load.sh): alora aLoRA vs alora plain LoRA vs llama-server (../shared/peer),
# N = 1..16 concurrent conversations, report table and gnuplot plots in build/bench-rag/results/.
bench-rag: build
	@bash bench/rag_load.sh $(BUILD)
# libFuzzer targets (fuzz/, docs/fuzzing.md): a clang build with ASan + UBSan in build-fuzz/, then
# each target for FUZZ_SECONDS (FUZZ_TARGETS="openai rpc" picks some; FUZZ_JOBS runs several at once).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DALORA_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf build build-asan build-fuzz
