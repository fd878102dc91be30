//! `herd-gen [DIR]`: writes shell completions and man pages for herdd and herdctl under DIR
//! (default `target/dist`). Used by `scripts/package`; not installed by the package.

fn main() -> std::process::ExitCode {
    let out = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target/dist".into());
    match herd_daemon::gen::write_all(&out) {
        Ok(files) => {
            println!("herd-gen: {} files in {}", files.len(), out.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herd-gen: cannot write to {}: {e}", out.display());
            std::process::ExitCode::FAILURE
        }
    }
}
