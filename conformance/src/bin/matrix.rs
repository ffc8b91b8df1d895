//! Writes conformance/MATRIX.md.

fn main() {
    match holdfast_conformance::matrix::generate() {
        Ok(s) => {
            let p = holdfast_conformance::run::root().join("conformance/MATRIX.md");
            std::fs::write(&p, s).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            println!("wrote {}", p.display());
        }
        Err(e) => {
            eprintln!("matrix: {e}");
            std::process::exit(2);
        }
    }
}
