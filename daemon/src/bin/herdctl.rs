fn main() -> std::process::ExitCode {
    herd_daemon::herdctl::main()
}
