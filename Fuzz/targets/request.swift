@testable import Server

// The server's request decoder: body bytes → JSON → CompletionRequest, for both endpoints, as
// OpenAIServer.complete does. Any body either decodes or gives an APIError with status 400 and a
// message of bounded length (it must not echo the body). The first byte picks the endpoint.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let endpoint: Endpoint = data[0] & 1 == 0 ? .chat : .completion
    guard let json = JSON.parse(UnsafeBufferPointer(start: data + 1, count: size - 1)) else { return 0 }
    do {
        _ = try CompletionRequest(endpoint: endpoint, body: json)
    } catch let error as APIError {
        if error.status.code != 400 { violated("status \(error.status.code) for a bad body: \(error.message)") }
        if error.message.utf8.count > 400 { violated("a \(error.message.utf8.count)-byte error message") }
    } catch {
        violated("an error that is not an APIError: \(error)")
    }
    return 0
}
