import Foundation
import Testing

/// Runs scripts/raft-process-test.sh against the built `shoal` binary: 3 processes on loopback,
/// kill -9 of the leader under CAS load, restart; no acknowledged write lost. Enabled when the
/// binary exists (`swift build` first; CI builds everything before testing).
@Suite struct ProcessTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/debug/shoal").path

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary)), .timeLimit(.minutes(2)))
    func threeProcessesSurviveLeaderKill() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [Self.root.appendingPathComponent("scripts/raft-process-test.sh").path, Self.binary]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(out)")
        #expect(out.contains("PASS"))
    }
}
