fn main() -> std::process::ExitCode {
    herd_daemon::herdd::main()
}
