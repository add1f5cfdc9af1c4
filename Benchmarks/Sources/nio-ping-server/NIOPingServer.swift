// nio-ping-server: a plain SwiftNIO implementation of the newline-delimited JSON
// ping protocol, on exactly one event loop. It is a comparison point for the
// benchmarks in docs/benchmarks.md and is not part of the Vigil package.
//
// Usage: nio-ping-server --listen HOST:PORT
// Prints `ready` on stdout once bound; exits 0 on SIGTERM or SIGINT.

import Dispatch
import Foundation
import NIOCore
import NIOPosix

/// Longest accepted line, in bytes, not counting the terminating "\n".
let maxLineLength = 65_536

// MARK: - Line framing

/// What the line decoder hands to the next handler.
enum Frame {
    /// One line, without its terminating "\n".
    case line(ByteBuffer)
    /// A line grew past `maxLineLength`; the connection is to be closed.
    case lineTooLong
}

/// Splits the inbound byte stream on "\n". Never buffers more than
/// `maxLineLength + 1` bytes of a single line.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = Frame

    /// Bytes of the current (incomplete) line already searched for "\n",
    /// so a line arriving in many reads is scanned only once.
    private var scanned = 0
    /// Set once a line was too long: everything after it is discarded.
    private var failed = false

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if failed {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            return .needMoreData
        }
        let readable = buffer.readableBytes
        // A line of maxLineLength bytes has its "\n" at offset maxLineLength.
        let searchEnd = min(readable, maxLineLength + 1)
        let newline: Int? = buffer.withUnsafeReadableBytes { bytes in
            bytes[scanned..<searchEnd].firstIndex(of: UInt8(ascii: "\n"))
        }
        if let newline {
            let line = buffer.readSlice(length: newline)!
            buffer.moveReaderIndex(forwardBy: 1)  // the "\n"
            scanned = 0
            context.fireChannelRead(wrapInboundOut(.line(line)))
            return .continue
        }
        if readable > maxLineLength {
            failed = true
            buffer.moveReaderIndex(to: buffer.writerIndex)
            context.fireChannelRead(wrapInboundOut(.lineTooLong))
            return .needMoreData
        }
        scanned = searchEnd
        return .needMoreData
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // Complete lines still buffered are served; a trailing partial line is dropped.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

// MARK: - Protocol

struct Request: Decodable {
    let op: String
}

final class PingHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    private let decoder = JSONDecoder()
    // Replies are built once per connection; ByteBuffer is copy-on-write, so
    // writing the same buffer again copies nothing.
    private var pong = ByteBuffer()
    private var malformed = ByteBuffer()
    private var unknownOp = ByteBuffer()
    private var tooLong = ByteBuffer()

    func handlerAdded(context: ChannelHandlerContext) {
        let allocator = context.channel.allocator
        pong = allocator.buffer(string: #"{"op":"pong"}"# + "\n")
        malformed = allocator.buffer(
            string: #"{"op":"error","code":"bad_request","message":"malformed request"}"# + "\n")
        unknownOp = allocator.buffer(
            string: #"{"op":"error","code":"bad_request","message":"unknown op"}"# + "\n")
        tooLong = allocator.buffer(
            string: #"{"op":"error","code":"bad_request","message":"line too long"}"# + "\n")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .line(let line):
            let reply: ByteBuffer
            if let request = try? decoder.decode(Request.self, from: Data(line.readableBytesView)) {
                reply = request.op == "ping" ? pong : unknownOp
            } else {
                reply = malformed
            }
            // Written now, flushed once per read batch in channelReadComplete.
            context.write(wrapOutboundOut(reply), promise: nil)
        case .lineTooLong:
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(tooLong)).whenComplete { _ in
                channel.close(promise: nil)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

// MARK: - Main

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("nio-ping-server: \(message)\n".utf8))
    exit(2)
}

/// Parses "HOST:PORT" or "[IPv6]:PORT".
func parseListen(_ value: String) -> (host: String, port: Int) {
    guard let colon = value.lastIndex(of: ":"),
          let port = Int(value[value.index(after: colon)...]), (0...65_535).contains(port)
    else { fail("bad --listen value \(value), expected HOST:PORT") }
    var host = String(value[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
}

/// SIGTERM / SIGINT close the listening socket, which ends `main`.
///
/// A free (nonisolated) function on purpose: a closure written inside `main`
/// would inherit its @MainActor isolation, and Swift 6 traps when Dispatch then
/// runs that closure off the main thread.
func closeOnTerminationSignals(_ serverChannel: Channel) -> [DispatchSourceSignal] {
    let queue = DispatchQueue(label: "nio-ping-server.signals")
    return [SIGTERM, SIGINT].map { sig in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
        source.setEventHandler { serverChannel.close(promise: nil) }
        source.resume()
        return source
    }
}

@main
struct NIOPingServer {
    static func main() throws {
        let args = Array(CommandLine.arguments.dropFirst())
        guard args.count == 2, args[0] == "--listen" else {
            fail("usage: nio-ping-server --listen HOST:PORT")
        }
        let (host, port) = parseListen(args[1])

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(LineDecoder()))
                    try sync.addHandler(PingHandler())
                }
            }

        let serverChannel: Channel
        do {
            serverChannel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            fail("cannot listen on \(host):\(port): \(error)")
        }

        let signalSources = closeOnTerminationSignals(serverChannel)

        // FileHandle writes are unbuffered: "ready" is out as soon as this returns.
        FileHandle.standardOutput.write(Data("ready\n".utf8))

        try serverChannel.closeFuture.wait()
        try group.syncShutdownGracefully()
        withExtendedLifetime(signalSources) {}
        exit(0)
    }
}
