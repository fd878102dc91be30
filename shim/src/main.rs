//! `herd-shim <dir>`: the supervisor of one exec workload, started by herdd (see the
//! `herd_shim` library). Small on purpose: one runs per workload, for its whole life.

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() != 2 {
        eprintln!("usage: herd-shim <workload directory> (started by herdd, not by hand)");
        return std::process::ExitCode::from(2);
    }
    let code = herd_shim::main(std::path::Path::new(&args[1]));
    std::process::ExitCode::from(code as u8)
}
