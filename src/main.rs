fn main() -> std::process::ExitCode {
    pnnc::cli::main()
}
