//! `herd-shim <dir>` (or `herd-shim --spare <dirs>`, its directory on stdin): the supervisor of one exec workload, started by herdd (see the
//! `herd_shim` library). Small on purpose: one runs per workload, for its whole life.

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = match args.as_slice() {
        // A spare: its directory comes on stdin (the argument only names herdd's, for ps).
        [_, flag, _workloads] if flag == "--spare" => herd_shim::spare_main(),
        [_, dir] => herd_shim::main(std::path::Path::new(dir)),
        _ => {
            eprintln!("usage: herd-shim <workload directory> | herd-shim --spare <workloads directory> (started by herdd, not by hand)");
            return std::process::ExitCode::from(2);
        }
    };
    std::process::ExitCode::from(code as u8)
}
