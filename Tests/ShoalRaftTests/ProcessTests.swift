import Foundation
import Testing

/// Runs the process scripts against the built `shoal` binary (enabled when it exists: `swift build`
/// first; CI builds everything before testing):
/// - scripts/raft-process-test.sh: 3 processes on loopback, kill -9 of the leader under CAS load,
///   restart; no acknowledged write lost.
/// - scripts/raft-learner-test.sh: a fourth process joins empty, is added as a learner, promoted,
///   and then counts in the quorum.
@Suite struct ProcessTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/debug/shoal").path

    static func runScript(_ name: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [root.appendingPathComponent("scripts/\(name)").path, binary]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(out)")
        #expect(out.contains("PASS"))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)), .timeLimit(.minutes(2)))
    func threeProcessesSurviveLeaderKill() throws { try Self.runScript("raft-process-test.sh") }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)), .timeLimit(.minutes(2)))
    func learnerJoinsAndIsPromoted() throws { try Self.runScript("raft-learner-test.sh") }
}
