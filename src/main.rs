/// mimalloc instead of the system allocator: the request path allocates many small, short-lived
/// objects; see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sso_gateway::cli::main()
}
