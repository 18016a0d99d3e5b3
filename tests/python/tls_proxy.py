"""A TLS-terminating reverse proxy for tests: serves HTTPS on 127.0.0.1:PORT with CERT/KEY
and forwards every request to UPSTREAM (plain HTTP), so that a client's TLS settings can be
tested against `binlake registry`, which serves plain HTTP.

usage: tls_proxy.py CERT KEY PORT UPSTREAM
"""
import http.server
import ssl
import sys
import urllib.error
import urllib.request

cert, key, port, upstream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
HOP = {"host", "content-length", "connection", "transfer-encoding"}


class Forward(http.server.BaseHTTPRequestHandler):
    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        req = urllib.request.Request(upstream + self.path, data=body, method=self.command,
                                     headers=headers)
        try:
            resp = urllib.request.urlopen(req)
        except urllib.error.HTTPError as e:
            resp = e
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = forward

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Forward)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
