-- POST /auth/tokens with the password method (bcrypt verify per request).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("WEFT_PW_BODY")
