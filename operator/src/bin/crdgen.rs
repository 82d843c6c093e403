//! Prints every CRD of the operator as YAML (`crdgen > all.yaml`), or writes one file per CRD
//! (`crdgen --write crds/`).

fn main() -> std::io::Result<()> {
    let crds = microdash_operator::resources::all_crds();
    match std::env::args().nth(1).as_deref() {
        Some("--write") => {
            let dir = std::path::PathBuf::from(std::env::args().nth(2).unwrap_or_else(|| "crds".into()));
            std::fs::create_dir_all(&dir)?;
            for crd in &crds {
                let path = dir.join(microdash_operator::resources::crd_file_name(crd));
                std::fs::write(&path, microdash_operator::resources::crd_yaml(crd))?;
                eprintln!("wrote {}", path.display());
            }
        }
        _ => crds.iter().for_each(|crd| print!("{}", microdash_operator::resources::crd_yaml(crd))),
    }
    Ok(())
}
