"""The HTTP API v1 on API Gateway (REST), routed by its own small resolver (:mod:`.resolver`).

- :mod:`.problems` maps every error to an RFC 9457 problem, in one place;
- :mod:`.http` reads what a request carries (tenant, JSON body, query, headers);
- :mod:`.routes` holds the routes, grouped per Lambda function;
- :mod:`.app` builds a function's resolver and its `lambda_handler`;
- :mod:`.authorizer` is the TOKEN authorizer's logic;
- :mod:`.boot` is the API functions' init phase (and their first invocation's collector).

Real-shaped API Gateway events (`claude_jobs_tools.api_gateway_events`) and the OpenAPI
generator (`claude_jobs_tools.openapi`) are tools: they never ship.
"""
