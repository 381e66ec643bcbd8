"""A minimal terminado server, the peer for bench/terminals.py.

Usage: terminado_server.py PORT COMMAND...   (serves /websocket and /healthz)
"""
import sys

import tornado.ioloop
import tornado.web
from terminado import TermSocket, UniqueTermManager


class Health(tornado.web.RequestHandler):
    def get(self):
        self.write({"status": "ok"})


def main():
    port = int(sys.argv[1])
    command = sys.argv[2:] or ["bash"]
    manager = UniqueTermManager(shell_command=command, max_terminals=100)
    app = tornado.web.Application([
        (r"/websocket", TermSocket, {"term_manager": manager}),
        (r"/healthz", Health),
    ])
    app.listen(port, "127.0.0.1")
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
