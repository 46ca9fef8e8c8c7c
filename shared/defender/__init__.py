"""The Defender XDR wing: requests, paging and answer classification (pure), and the client."""
