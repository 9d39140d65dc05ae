import ArgumentParser
import Netns

/// Flags shared by `airlock run` and `airlock netns exec`: what the command sees of the
/// host's filesystem and which kernel features it keeps.
struct SandboxOptions: PlainOptions {
    @Option(name: .customLong("mask"), help: ArgumentHelp("Also hide this path inside the sandbox (an empty directory, or /dev/null over a file); repeatable.", valueName: "path"))
    var masks: [String] = []

    @Flag(help: "Share the host's /tmp and /dev/shm instead of fresh ones. Risky: the command can then reach every socket and file other processes keep there (tmux, ssh-agent, IDE and X sockets).")
    var shareTmp = false

    @Option(help: ArgumentHelp("The command's working directory (default: the current one). The command's user must be able to enter it.", valueName: "dir"))
    var cwd: String?

    @Flag(help: "Let the command create user namespaces (for tools that build their own sandbox: browsers, bwrap). Every other seccomp rule stays.")
    var allowNestedNamespaces = false

    /// The options above, for a plain line of `run` (PlainLine).
    static let plainOptions: [PlainOption<Self>] = [
        .values("mask") { $0.masks = $1 }, .flag("share-tmp") { $0.shareTmp = $1 }, .value("cwd") { $0.cwd = $1 },
        .flag("allow-nested-namespaces") { $0.allowNestedNamespaces = $1 },
    ]

    /// The command's working directory: `--cwd` made absolute, else the current directory.
    func workingDirectory() -> String? {
        let current = NetnsExec.currentDirectory()
        guard let cwd else { return current }
        if cwd.hasPrefix("/") { return cwd }
        return current.map { ($0 == "/" ? "" : $0) + "/" + cwd } ?? cwd
    }

    /// The sandbox view for `user` working in `workingDirectory`, with airlock's own
    /// `protectedFiles` hidden too.
    /// - Throws: `Masks.PathError` for a bad `--mask`, `SandboxView.ViewError`.
    func view(for user: SandboxUser, workingDirectory: String?, protectedFiles: [String] = []) throws -> SandboxView {
        try SandboxView.build(
            home: user.home, extraMasks: masks, protectedFiles: protectedFiles, privateTmp: !shareTmp,
            workingDirectory: workingDirectory)
    }

    /// Applies the kernel-feature flags to a spawn request.
    func apply(to spec: inout SandboxProcessSpec) {
        spec.privateTmp = !shareTmp
        spec.allowNestedNamespaces = allowNestedNamespaces
    }
}

extension SandboxView {
    /// The notice lines airlock prints before the command starts: credential paths by
    /// name, the rest counted.
    var notices: [String] {
        var lines: [String] = []
        let named = credentialMasks + protectedFiles
        if !named.isEmpty { lines.append("airlock: masked \(named.map(\.path).joined(separator: ", "))") }
        for mask in credentialMasks where mask.path.hasSuffix("/.npmrc") {
            NpmrcSettings.notice(forMasked: mask.path).map { lines.append($0) }
        }
        if !sockets.isEmpty || !kernelMounts.isEmpty {
            lines.append("airlock: hidden \(sockets.count) host socket(s) and \(kernelMounts.count) kernel filesystem mount(s)")
        }
        return lines
    }
}
