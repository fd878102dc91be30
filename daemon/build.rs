//! herdd's link: relative relocations packed (DT_RELR, glibc ≥ 2.36, binutils ≥ 2.38). A
//! position-independent herdd carries one relocation per pointer in its read-only data; the
//! loader reads the whole table at every start, and those pages then stay in herdd's RSS. Packed,
//! the table shrinks from 830 KB to 14 KB, and idle RSS from 15.9 to 14.1 MB (three alternating
//! runs of each build; docs/operations.md says what it requires of the system).
fn main() {
    println!("cargo:rustc-link-arg-bin=herdd=-Wl,-z,pack-relative-relocs");
}
