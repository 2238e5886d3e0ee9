//! Embeds a VERSIONINFO resource in `dsreg-agent.exe` when the target is Windows, so Intune
//! detection rules can check the file version and supersedence works. Other targets: nothing.
//!
//! FileVersion and ProductVersion are the crate version (`CARGO_PKG_VERSION`, as
//! `major.minor.patch.0`). The resource compiler is `rc.exe` on MSVC, `windres` with the GNU
//! toolchain, and `x86_64-w64-mingw32-windres` when cross-building from Linux (Debian package
//! `binutils-mingw-w64-x86-64`, which `gcc-mingw-w64-x86-64` brings).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    // Cargo runs build scripts on the host: the target is in CARGO_CFG_TARGET_OS.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return Ok(());
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut res = winresource::WindowsResource::new();
    res.set("ProductName", "dsreg-fleet agent")
        .set(
            "FileDescription",
            "dsreg-agent: Microsoft Entra hybrid join telemetry agent",
        )
        .set("CompanyName", "dsreg-fleet")
        .set("InternalName", "dsreg-agent")
        .set("OriginalFilename", "dsreg-agent.exe")
        .set("FileVersion", version)
        .set("ProductVersion", version)
        .set("LegalCopyright", "Apache-2.0");
    res.compile()?;
    Ok(())
}
