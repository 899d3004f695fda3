# graphloop's entry points; CI (.ci/run) runs the same commands.

default:
    @just --list

# Format every crate.
fmt:
    cargo fmt --all

# Clippy on everything, warnings are errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked

# The test suite (the README's test command).
test:
    cargo test --workspace

# Benchmarks: print the figures recorded in docs/benchmarks.md.
bench: bench-engine bench-contracts bench-soak

# The engine's own benchmarks (graph core, runtime, PostgreSQL write path).
bench-engine:
    cargo run --release --locked --example bench_core
    cargo run --release --locked --example bench_engine

# Contracts per second through the CLI: 500 contracts (the samples repeated), in memory
# and on PostgreSQL, without and with an emulated 200 ms model latency.
bench-contracts count="500" database="postgres://root@127.0.0.1:5432/test":
    bash .ci/bench-contracts {{count}} {{database}}

# Memory soak (issue 11): rounds of contract runs (all of a round in flight at once) on one
# engine on PostgreSQL, printing RSS per round; fails if a run does not complete or if the
# RSS after the last round exceeds the RSS after round 1 by more than 10 %.
bench-soak rounds="10" runs="300" database="postgres://root@127.0.0.1:5432/test":
    SOAK_STORE=pg DATABASE_URL={{database}} SOAK_MAX_GROWTH=10 cargo run --release --locked --example soak_memory -- {{rounds}} {{runs}}

# Clause precision and recall over the labelled samples and the held-out set.
score:
    cargo run --release --locked -p graphloop-contracts --example score_samples -- samples
    cargo run --release --locked -p graphloop-contracts --example score_samples -- samples/holdout

# The contract analyser against expert labels (CUAD's format), e.g. `just eval ../shared/contracts-cuad`.
eval dir:
    cargo run --release --locked -p graphloop-cli -- eval {{dir}}

# The main job: analyse the sample contracts (in memory unless DATABASE_URL is set).
demo:
    cargo run -p graphloop-cli -- analyze samples

# The example service: the web routes and a live page over the contract workflow
# (tokens from GRAPHLOOP_TOKENS, PostgreSQL from DATABASE_URL, else in memory).
serve:
    cargo run --example contract-service

# Start the local PostgreSQL cluster if it is installed and not running.
db-up:
    bash .ci/db-up

# Everything CI runs.
ci:
    bash .ci/run
