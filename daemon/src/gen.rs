//! Shell completions (bash, zsh, fish) and man pages for herdd and herdctl, generated from their
//! command-line definitions; `scripts/package` ships them, `deploy/install.sh` installs them.

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Writes `<out>/completions/{herdd.bash,_herdd,herdd.fish,…}` and `<out>/man/*.1` (one page per
/// command and subcommand); answers the files written.
pub fn write_all(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let completions = out.join("completions");
    let man = out.join("man");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;
    let mut written = vec![];
    for (name, cmd) in [
        ("herdd", crate::herdd::Cli::command()),
        ("herdctl", herdctl::Cli::command()),
    ] {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut cmd = cmd.clone();
            written.push(clap_complete::generate_to(
                shell,
                &mut cmd,
                name,
                &completions,
            )?);
        }
        clap_mangen::generate_to(cmd, &man)?;
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    written.extend(pages);
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn completions_and_man_pages_cover_both_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::write_all(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "herdd.bash",
            "_herdd",
            "herdd.fish",
            "herdctl.bash",
            "_herdctl",
            "herdctl.fish",
            "herdd.1",
            "herdctl.1",
            "herdd-doctor.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        let page = std::fs::read_to_string(dir.path().join("man/herdd.1")).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH herdd"),
            "{page}"
        );
        assert!(page.contains("on\\-shutdown"), "the page lists the flags");
        let bash = std::fs::read_to_string(dir.path().join("completions/herdctl.bash")).unwrap();
        assert!(bash.contains("complete -F"), "{bash}");
    }
}
