-- POST /auth/tokens with the token method (WEFT_TOKEN rescoped to project admin).
local tok = os.getenv("WEFT_TOKEN")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"auth":{"identity":{"methods":["token"],"token":{"id":"' .. tok .. '"}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}'
