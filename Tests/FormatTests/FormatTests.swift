// Fails when any Swift file in the repository is not formatted per .swift-format
// (`swift format lint --strict`). Fix with `scripts/format.sh`.

import Foundation
import Testing

@Suite struct FormatTests {
    @Test func sourcesAreFormatted() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [
            "swift", "format", "lint", "--strict", "--recursive", "--parallel",
            "--configuration", root.appendingPathComponent(".swift-format").path,
            root.appendingPathComponent("Sources").path, root.appendingPathComponent("Tests").path,
            root.appendingPathComponent("Package.swift").path,
        ]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = err
        try p.run()
        let out = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "unformatted code (run scripts/format.sh):\n\(out.prefix(4000))")
    }
}
