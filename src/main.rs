fn main() -> std::process::ExitCode {
    sso_gateway::cli::main()
}
