fn main() -> std::process::ExitCode {
    herdctl::main()
}
