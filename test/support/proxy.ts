/**
 * A TCP proxy for fault injection in front of a real server (Keystone, SMTP). Faults are armed
 * for requests whose first bytes match a pattern, and fire once each.
 */
import net from "node:net";

/** What to do to a matching request. */
export type Fault =
  /** Reset the client connection before the request reaches the server (the request is lost). */
  | "reset-before"
  /** Let the server act on the request, then reset the client connection instead of answering. */
  | "reset-after";

interface Armed {
  readonly pattern: RegExp;
  readonly fault: Fault;
  remaining: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** Arms a fault for the next `times` requests whose start matches `pattern`. */
  arm(pattern: RegExp, fault: Fault, times?: number): void;
  /** How many faults fired. */
  fired(): number;
  /** How many client connections were accepted. */
  connections(): number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts a proxy from 127.0.0.1:<random port> to `upstreamPort` on 127.0.0.1. */
export async function startFaultProxy(upstreamPort: number): Promise<FaultProxy> {
  const armed: Armed[] = [];
  const sockets = new Set<net.Socket>();
  let fired = 0;
  let connections = 0;
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    let swallowReply = false;
    client.on("data", (chunk) => {
      const head = chunk.subarray(0, 256).toString("latin1");
      const hit = armed.find((a) => a.remaining > 0 && a.pattern.test(head));
      if (hit) {
        hit.remaining--;
        fired++;
        if (hit.fault === "reset-before") {
          client.resetAndDestroy();
          upstream.destroy();
          return;
        }
        swallowReply = true;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (swallowReply) {
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    arm(pattern, fault, times = 1) {
      armed.push({ pattern, fault, remaining: times });
    },
    fired: () => fired,
    connections: () => connections,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}
