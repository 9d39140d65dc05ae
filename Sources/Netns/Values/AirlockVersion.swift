/// The version recorded in sandbox state files.
package enum AirlockVersion {
    /// This build's version.
    package static let current = "0.1.0"
}
