//! Compiles the C CO-RE eBPF programs with clang, and a host program that
//! prints the ABI header's layout for the Rust mirror's layout test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let include = manifest.join("include");
    let bpf_dir = manifest.join("bpf");
    for p in [
        "include/telltale_abi.h",
        "bpf/telltale.bpf.c",
        "bpf/telltale_pod.bpf.c",
        "bpf/telltale_pod_maps.h",
        "bpf/abi_layout.c",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed=TELLTALE_VMLINUX_H");
    println!("cargo:rerun-if-env-changed=TELLTALE_CLANG");

    let vmlinux_dir = out.join("vmlinux");
    std::fs::create_dir_all(&vmlinux_dir)?;
    let vmlinux_h = vmlinux_dir.join("vmlinux.h");
    write_vmlinux_h(&vmlinux_h)?;

    let clang = std::env::var("TELLTALE_CLANG").unwrap_or_else(|_| "clang".into());
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH")?.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => bail!("unsupported target architecture for the eBPF programs: {other}"),
    };
    for (source, object) in [("telltale.bpf.c", "telltale.bpf.o"), ("telltale_pod.bpf.c", "telltale_pod.bpf.o")] {
        run(Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-D__TARGET_ARCH_{arch}"))
            .arg("-I")
            .arg(&include)
            .arg("-I")
            .arg(&bpf_dir)
            .arg("-I")
            .arg(&vmlinux_dir)
            .arg("-c")
            .arg(bpf_dir.join(source))
            .arg("-o")
            .arg(out.join(object)))
        .with_context(|| format!("compiling {source} with `{clang}` (install clang, llvm and libbpf-dev)"))?;
    }

    // The ABI layout as the C compiler sees it, for the Rust mirror's test.
    let layout_bin = out.join("abi_layout");
    run(Command::new(&clang).arg("-I").arg(&include).arg(bpf_dir.join("abi_layout.c")).arg("-o").arg(&layout_bin))
        .context("compiling the ABI layout probe")?;
    let output = Command::new(&layout_bin).output().context("running the ABI layout probe")?;
    if !output.status.success() {
        bail!("the ABI layout probe failed: {}", output.status);
    }
    std::fs::write(out.join("abi_layout.rs"), output.stdout)?;
    Ok(())
}

/// vmlinux.h from the build machine's kernel BTF (or TELLTALE_VMLINUX_H).
fn write_vmlinux_h(dest: &Path) -> Result<()> {
    if let Ok(given) = std::env::var("TELLTALE_VMLINUX_H") {
        std::fs::copy(&given, dest).with_context(|| format!("copying TELLTALE_VMLINUX_H={given}"))?;
        return Ok(());
    }
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    if !btf.exists() {
        bail!(
            "{} is missing: building the eBPF programs needs a kernel with BTF \
             (CONFIG_DEBUG_INFO_BTF=y) or TELLTALE_VMLINUX_H=path/to/vmlinux.h",
            btf.display()
        );
    }
    let output = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(btf)
        .args(["format", "c"])
        .output()
        .context("running bpftool to generate vmlinux.h (install bpftool)")?;
    if !output.status.success() {
        bail!("bpftool btf dump failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    std::fs::write(dest, output.stdout)?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let output = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
