module mcp-gateway/tests/oracles/go

go 1.19
