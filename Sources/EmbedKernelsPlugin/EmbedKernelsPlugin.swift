import Foundation
import PackagePlugin

/// Build-tool plugin: turns `Kernels/opencl/*.cl` into a generated Swift source of string
/// literals (`OpenCLKernelSources`), so the kernels ship inside the binary and a kernel edit
/// rebuilds the target that embeds them.
@main
struct EmbedKernelsPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let directory = context.package.directoryURL.appending(path: "Kernels/opencl")
        let kernels = try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "cl" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "OpenCLKernelSources.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(kernels.count) OpenCL kernel files",
                executable: try context.tool(named: "EmbedKernels").url,
                arguments: [output.path] + kernels.map(\.path),
                inputFiles: kernels,
                outputFiles: [output]
            ),
        ]
    }
}
