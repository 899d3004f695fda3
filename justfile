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
bench:
    cargo run --release --locked --example bench_core
    cargo run --release --locked --example bench_engine

# The main job.
demo:
    cargo run --example quickstart

# Start the local PostgreSQL cluster if it is installed and not running.
db-up:
    bash .ci/db-up

# Everything CI runs.
ci:
    bash .ci/run
