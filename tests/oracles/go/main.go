// Differential oracle: an MCP endpoint that reads requests the way a Go server built on
// the standard library's encoding/json does. encoding/json matches object keys to
// struct fields case-insensitively, with Unicode simple case folding for keys that
// contain s or k ("Params", "PARAMS" and "paramſ" all fill Params; "Name" fills Name),
// and the last matching key wins. CVE-2026-27896 was this class of bug in the Go MCP
// SDK. The message classification follows the Go SDK's jsonrpc2 decoder: a message
// with a method is a request (a notification without an id), otherwise one with a
// result or an error is a response.
//
// It logs every HTTP request's gateway and MCP headers (--header-log) and every request
// it dispatches (--dispatch-log: method, tool name for tools/call, and the protocol
// version it read from _meta), before answering a fixed result. Standard library only
// (Debian's golang-go 1.19).
//
//	go build -o /tmp/go-oracle . && /tmp/go-oracle -port 8002 -header-log h.jsonl -dispatch-log d.jsonl
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

// message is the JSON-RPC 2.0 envelope of every MCP message.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   json.RawMessage `json:"error"`
}

// params is the union of the fields the gateway labels from: tools/call and
// prompts/get carry name, resources/read carries uri, every 2026-07-28 request
// carries _meta with the protocol version.
type params struct {
	Name      string          `json:"name"`
	URI       string          `json:"uri"`
	Arguments json.RawMessage `json:"arguments"`
	Meta      struct {
		ProtocolVersion string `json:"io.modelcontextprotocol/protocolVersion"`
	} `json:"_meta"`
}

const (
	parseError     = -32700
	invalidRequest = -32600
	invalidParams  = -32602
	// Larger than the gateway's body limit, so only the gateway's limit applies.
	maxBody = 8 << 20
)

// Headers worth logging: the same prefixes as demo/mcp_server.py's SHOWN.
var shown = []string{"x-mcp-", "x-agent-id", "x-user-id", "mcp-", "authorization", "traceparent"}

type jsonLog struct {
	mu   sync.Mutex
	path string
}

func (l *jsonLog) write(record interface{}) {
	if l.path == "" {
		return
	}
	line, err := json.Marshal(record)
	if err != nil {
		log.Printf("log record: %v", err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		log.Printf("open %s: %v", l.path, err)
		return
	}
	defer f.Close()
	f.Write(append(line, '\n'))
}

// latin1 reads raw header bytes as ISO-8859-1, as the Python and Node servers do, so
// the three header logs agree byte for byte.
func latin1(s string) string {
	runes := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		runes[i] = rune(s[i])
	}
	return string(runes)
}

type oracle struct {
	headers, dispatches jsonLog
}

func (o *oracle) logHeaders(r *http.Request) {
	pairs := [][2]string{}
	for name, values := range r.Header {
		lower := strings.ToLower(name)
		for _, prefix := range shown {
			if strings.HasPrefix(lower, prefix) {
				for _, value := range values {
					pairs = append(pairs, [2]string{lower, latin1(value)})
				}
				break
			}
		}
	}
	o.headers.write(map[string]interface{}{"method": r.Method, "path": r.URL.Path, "headers": pairs})
}

func reply(w http.ResponseWriter, status int, id json.RawMessage, key string, value interface{}) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	body, _ := json.Marshal(map[string]interface{}{"jsonrpc": "2.0", "id": id, key: value})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func fail(w http.ResponseWriter, id json.RawMessage, code int, err error) {
	reply(w, http.StatusBadRequest, id, "error", map[string]interface{}{"code": code, "message": err.Error()})
}

func (o *oracle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.logHeaders(r)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		fail(w, nil, parseError, err)
		return
	}
	var msg message
	if err := json.Unmarshal(body, &msg); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			fail(w, nil, invalidRequest, err)
		} else {
			fail(w, nil, parseError, err)
		}
		return
	}
	if msg.JSONRPC != "2.0" {
		fail(w, msg.ID, invalidRequest, errors.New("jsonrpc must be \"2.0\""))
		return
	}
	if msg.Method == "" {
		if len(msg.Result) > 0 || len(msg.Error) > 0 {
			// A response to a server request: accepted, nothing dispatched.
			w.WriteHeader(http.StatusAccepted)
			return
		}
		fail(w, msg.ID, invalidRequest, errors.New("no method"))
		return
	}
	var p params
	if len(msg.Params) > 0 && !bytes.Equal(msg.Params, []byte("null")) {
		if err := json.Unmarshal(msg.Params, &p); err != nil {
			fail(w, msg.ID, invalidParams, err)
			return
		}
	}
	if msg.Method == "tools/call" && p.Name == "" {
		fail(w, msg.ID, invalidParams, errors.New("tools/call needs params.name"))
		return
	}
	record := map[string]string{"method": msg.Method, "protocolVersion": p.Meta.ProtocolVersion}
	if msg.Method == "tools/call" {
		record["name"] = p.Name
	}
	o.dispatches.write(record)
	if len(msg.ID) == 0 || bytes.Equal(msg.ID, []byte("null")) {
		// A notification: acknowledged without a body.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	var result interface{} = map[string]interface{}{}
	if msg.Method == "tools/call" {
		result = map[string]interface{}{
			"content": []map[string]string{{"type": "text", "text": "ok"}},
			"isError": false,
		}
	}
	reply(w, http.StatusOK, msg.ID, "result", result)
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8002, "port to listen on")
	headerLog := flag.String("header-log", "", "append received headers to this JSONL file")
	dispatchLog := flag.String("dispatch-log", "", "append dispatched requests to this JSONL file")
	flag.Parse()
	o := &oracle{headers: jsonLog{path: *headerLog}, dispatches: jsonLog{path: *dispatchLog}}
	addr := *host + ":" + strconv.Itoa(*port)
	log.Fatal(http.ListenAndServe(addr, o))
}
