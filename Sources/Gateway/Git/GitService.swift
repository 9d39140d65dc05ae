import GatewayCore
/// The two git Smart HTTP services the gateway carries.
package enum GitService: String, Sendable, Equatable {
    /// Clone and fetch.
    case uploadPack = "git-upload-pack"
    /// Push.
    case receivePack = "git-receive-pack"

    /// The access a session needs for this service.
    package var requiredAccess: RepoAccess {
        switch self {
        case .uploadPack: .read
        case .receivePack: .rw
        }
    }
}
