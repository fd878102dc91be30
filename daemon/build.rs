//! herdd's link: relative relocations packed (DT_RELR, glibc ≥ 2.36, binutils ≥ 2.38). A
//! position-independent herdd carries one relocation per pointer in its read-only data; the
//! loader reads the whole table at every start, and those pages then stay in herdd's RSS. Packed,
//! the table shrinks from about 800 KB to a few KB (measured in docs/BENCHMARKS.md's footprint).
fn main() {
    println!("cargo:rustc-link-arg-bin=herdd=-Wl,-z,pack-relative-relocs");
}
