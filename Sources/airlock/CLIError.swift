#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

/// Exit codes shared by every subcommand. Documented in docs/configuration.md.
enum ExitCodes {
    /// Something failed; the message says what.
    static let failure: Int32 = 1
    /// The named sandbox, session or file does not exist.
    static let notFound: Int32 = 3
    /// The caller lacks a privilege (the message names the capability).
    static let permission: Int32 = 4
    /// Command-line usage errors (swift-argument-parser's own code).
    static let usage: Int32 = 64
    /// `run` and `netns exec` only: airlock itself failed before or around the command
    /// (a bad flag, a missing privilege, a setup step), so the command's own statuses
    /// (1, 2, 64…) never collide with airlock's. The convention of `docker run`, `chroot`
    /// and `env`; 126 (not executable), 127 (not found) and 128+n (signal n) follow it too.
    static let wrapperFailure: Int32 = 125
    /// The command to run was not found, like a shell.
    static let commandNotFound: Int32 = 127
}

/// An error the command line reports as one line and an exit code.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32

    init(_ message: String, exitCode: Int32 = ExitCodes.failure) {
        self.message = message
        self.exitCode = exitCode
    }

    var description: String { message }
}

/// Prints `airlock: error: <message>` on stderr, one line.
func printError(_ message: String) {
    let line = "airlock: error: " + message.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: " ") + "\n"
    _ = line.withCString { fputs($0, stderr) }
}

/// Prints a line on stderr.
func printNotice(_ message: String) {
    _ = (message + "\n").withCString { fputs($0, stderr) }
}

/// For `run` and `netns exec`: any error of airlock's own is printed as one line and
/// exits 125, so it cannot be mistaken for the command's status.
func reportingWrapperErrors<R>(_ body: () throws -> R) throws -> R {
    try reportingErrors(exitCode: { _ in ExitCodes.wrapperFailure }, overridingCLIErrors: true, body)
}

/// Runs `body`; any error is printed as one line and turned into its exit code.
///
/// `map` lets the caller give library errors their own exit codes (a missing sandbox
/// exits 3, a missing privilege 4), and with `overridingCLIErrors` also the errors that
/// carry their own code; everything else exits 1.
func reportingErrors<R>(
    exitCode map: (Error) -> Int32? = { _ in nil },
    overridingCLIErrors: Bool = false,
    _ body: () throws -> R
) throws -> R {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as CLIError {
        printError(error.message)
        throw ExitCode(overridingCLIErrors ? map(error) ?? error.exitCode : error.exitCode)
    } catch {
        printError(String(describing: error))
        throw ExitCode(map(error) ?? ExitCodes.failure)
    }
}
