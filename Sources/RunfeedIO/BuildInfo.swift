import CBuildInfo

/// What this binary is: the release version (`runfeed --version`) and the source revision baked in
/// at build time (`scripts/build-info.sh`; `unknown` for a build without it).
public enum BuildInfo {
    public static let version = "0.1.0"
    public static let revision = String(cString: runfeed_build_revision())
}
