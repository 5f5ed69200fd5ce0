package admin

import (
	"net/http"
	"strconv"
	"strings"
)

// languages are the pages' languages, in the order the switch shows them.
var languages = []struct{ Code, Name string }{
	{"en", "English"}, {"zh", "简体中文"}, {"es", "Español"},
}

// messages holds every string the pages show, per language. Every language
// has every key (TestMessagesComplete).
var messages = map[string]map[string]string{
	"en": {
		"health.degraded":    "Charges are not reaching the database: model calls are admitted and their charges kept in the journal.",
		"health.unavailable": "Charges cannot be recorded: model calls are refused until the database is back.",
		"health.store":       "Database", "health.pending": "Charges waiting in the journal", "health.journal": "The journal cannot be written",
		"app": "OpenWebUI Monitor", "nav.overview": "Overview", "nav.users": "Users", "nav.models": "Models",
		"nav.records": "Records", "nav.user": "User", "nav.login": "Sign in", "nav.settings": "Settings", "logout": "Log out", "lang": "Language",
		"login.title": "Sign in", "login.token": "Access token", "login.submit": "Sign in",
		"login.failed": "Wrong access token.", "login.limited": "Too many failed attempts. Wait a minute and try again.",
		"login.notoken": "No access token is configured: set access_token to use the dashboard.",
		"range.today":   "Today", "range.7d": "7 days", "range.month": "This month", "range.30d": "30 days",
		"range.all": "All", "range.custom": "Custom", "from": "From", "to": "To", "apply": "Apply",
		"total.cost": "Cost", "total.calls": "Calls", "total.tokens": "Tokens", "total.users": "Active users",
		"total.models": "Models", "chart.bymodel": "Share by model", "chart.byuser": "Top users",
		"chart.daily": "Daily usage", "metric.cost": "Cost", "metric.calls": "Calls", "nodata": "No usage in this period.",
		"search": "Search", "users.search": "Name or email", "col.name": "Name", "col.email": "Email", "col.role": "Role",
		"col.balance": "Balance", "col.status": "Status", "col.created": "Created", "status.active": "Active",
		"status.blocked": "Blocked", "users.everyone": "Everyone", "prev": "Previous", "next": "Next", "page": "Page", "sort": "Sort",
		"order.asc": "Ascending", "order.desc": "Descending", "user.setbalance": "Set balance", "user.topup": "Top up",
		"user.amount": "Amount", "user.reason": "Reason", "user.block": "Block", "user.unblock": "Unblock",
		"user.history": "Balance history", "user.recent": "Recent records", "user.notfound": "No such user.",
		"col.time": "Time", "col.actor": "By", "col.old": "Before", "col.new": "After", "save": "Save",
		"models.title": "Model prices", "col.model": "Model", "col.input": "Input / 1M tokens",
		"col.output": "Output / 1M tokens", "col.permsg": "Per message", "models.permsghint": "empty: bill by tokens",
		"models.priced": "priced", "models.default": "default price", "models.none": "No models yet: they appear here once used or priced.",
		"saved": "Saved", "records.users": "User IDs (comma-separated)", "records.models": "Models (comma-separated)",
		"export": "Export CSV", "col.user": "User", "col.in": "Input tokens", "col.out": "Output tokens", "col.cost": "Cost",
		"col.after": "Balance after", "col.source": "Source", "none": "Nothing here.", "total": "Total",
		"settings.store": "Database", "settings.owui": "OpenWebUI", "configured": "configured", "notconfigured": "not configured",
		"settings.function": "Filter function", "settings.functionhint": "Paste this key into the Usage Monitor function's api_key valve, and this address into its api_endpoint (as OpenWebUI reaches it).",
		"settings.reachable": "answers", "settings.unreachable": "does not answer", "settings.apikey": "API key", "settings.noapikey": "No api_key (API_KEY) is set: the function's calls are refused.", "settings.show": "Show", "settings.copy": "Copy", "settings.copied": "Copied",
		"settings.endpoint": "Address", "settings.deploy": "Ways to deploy", "settings.deployhint": "Function only: OpenWebUI's filter function reports each answer here. In front of OpenWebUI: this server also gates and meters the model calls that pass through it. The README describes both.",
		"models.saveall": "Save all changes", "models.search": "Filter models", "models.sync": "Sync from base", "models.syncall": "Sync all from bases", "models.test": "Test", "models.testall": "Test all",
		"models.export": "Export prices (JSON)", "models.import": "Import prices (JSON)", "models.testing": "Testing", "models.ok": "works", "models.failed": "failed",
		"settings.owuihint": "OpenWebUI's address and admin key (openwebui, openwebui_api_key) let the monitor list models.",
		"settings.currency": "Currency", "settings.sessions": "Sessions last 12 hours and end when the server restarts.",
	},
	"zh": {
		"health.degraded":    "扣费暂时无法写入数据库：模型调用照常放行，扣费保存在日志中。",
		"health.unavailable": "无法记录扣费：在数据库恢复前拒绝模型调用。",
		"health.store":       "数据库", "health.pending": "日志中待写入的扣费", "health.journal": "日志无法写入",
		"app": "OpenWebUI 监控", "nav.overview": "概览", "nav.users": "用户", "nav.models": "模型",
		"nav.records": "记录", "nav.user": "用户", "nav.login": "登录", "nav.settings": "设置", "logout": "退出登录", "lang": "语言",
		"login.title": "登录", "login.token": "访问令牌", "login.submit": "登录",
		"login.failed": "访问令牌错误。", "login.limited": "失败次数过多，请一分钟后再试。",
		"login.notoken": "未配置访问令牌：请设置 access_token 以使用面板。",
		"range.today":   "今天", "range.7d": "7 天", "range.month": "本月", "range.30d": "30 天",
		"range.all": "全部", "range.custom": "自定义", "from": "开始", "to": "结束", "apply": "应用",
		"total.cost": "费用", "total.calls": "调用次数", "total.tokens": "令牌数", "total.users": "活跃用户",
		"total.models": "模型数", "chart.bymodel": "模型占比", "chart.byuser": "用户排行",
		"chart.daily": "每日用量", "metric.cost": "费用", "metric.calls": "调用次数", "nodata": "此期间没有用量。",
		"search": "搜索", "users.search": "姓名或邮箱", "col.name": "姓名", "col.email": "邮箱", "col.role": "角色",
		"col.balance": "余额", "col.status": "状态", "col.created": "创建时间", "status.active": "正常",
		"status.blocked": "已停用", "users.everyone": "全部", "prev": "上一页", "next": "下一页", "page": "页", "sort": "排序",
		"order.asc": "升序", "order.desc": "降序", "user.setbalance": "设置余额", "user.topup": "充值",
		"user.amount": "金额", "user.reason": "原因", "user.block": "停用", "user.unblock": "启用",
		"user.history": "余额变动", "user.recent": "最近记录", "user.notfound": "用户不存在。",
		"col.time": "时间", "col.actor": "操作者", "col.old": "变动前", "col.new": "变动后", "save": "保存",
		"models.title": "模型价格", "col.model": "模型", "col.input": "输入 / 百万令牌",
		"col.output": "输出 / 百万令牌", "col.permsg": "每条消息", "models.permsghint": "留空：按令牌计费",
		"models.priced": "已定价", "models.default": "默认价格", "models.none": "暂无模型：模型被使用或定价后会出现在这里。",
		"saved": "已保存", "records.users": "用户 ID（逗号分隔）", "records.models": "模型（逗号分隔）",
		"export": "导出 CSV", "col.user": "用户", "col.in": "输入令牌", "col.out": "输出令牌", "col.cost": "费用",
		"col.after": "剩余余额", "col.source": "来源", "none": "暂无数据。", "total": "合计",
		"settings.store": "数据库", "settings.owui": "OpenWebUI", "configured": "已配置", "notconfigured": "未配置",
		"settings.function": "过滤函数", "settings.functionhint": "将此密钥填入 Usage Monitor 函数的 api_key，将此地址填入其 api_endpoint（以 OpenWebUI 能访问到的地址为准）。",
		"settings.reachable": "可以访问", "settings.unreachable": "无法访问", "settings.apikey": "API 密钥", "settings.noapikey": "未设置 api_key（API_KEY）：函数的调用会被拒绝。", "settings.show": "显示", "settings.copy": "复制", "settings.copied": "已复制",
		"settings.endpoint": "地址", "settings.deploy": "部署方式", "settings.deployhint": "仅函数：由 OpenWebUI 的过滤函数上报每条回答。置于 OpenWebUI 之前：本服务还会拦截并计量经过它的模型调用。README 中有两种方式的说明。",
		"models.saveall": "保存全部修改", "models.search": "筛选模型", "models.sync": "从基础模型同步", "models.syncall": "全部从基础模型同步", "models.test": "测试", "models.testall": "全部测试",
		"models.export": "导出价格（JSON）", "models.import": "导入价格（JSON）", "models.testing": "测试中", "models.ok": "可用", "models.failed": "失败",
		"settings.owuihint": "OpenWebUI 的地址和管理员密钥（openwebui、openwebui_api_key）用于获取模型列表。",
		"settings.currency": "货币", "settings.sessions": "会话有效期为 12 小时，服务器重启后失效。",
	},
	"es": {
		"health.degraded":    "Los cargos no llegan a la base de datos: las llamadas se admiten y sus cargos quedan en el diario.",
		"health.unavailable": "No se pueden registrar cargos: las llamadas se rechazan hasta que vuelva la base de datos.",
		"health.store":       "Base de datos", "health.pending": "Cargos en espera en el diario", "health.journal": "No se puede escribir el diario",
		"app": "Monitor de OpenWebUI", "nav.overview": "Resumen", "nav.users": "Usuarios", "nav.models": "Modelos",
		"nav.records": "Registros", "nav.user": "Usuario", "nav.login": "Iniciar sesión", "nav.settings": "Ajustes", "logout": "Cerrar sesión", "lang": "Idioma",
		"login.title": "Iniciar sesión", "login.token": "Token de acceso", "login.submit": "Entrar",
		"login.failed": "Token de acceso incorrecto.", "login.limited": "Demasiados intentos fallidos. Espera un minuto y vuelve a intentarlo.",
		"login.notoken": "No hay token de acceso configurado: define access_token para usar el panel.",
		"range.today":   "Hoy", "range.7d": "7 días", "range.month": "Este mes", "range.30d": "30 días",
		"range.all": "Todo", "range.custom": "Personalizado", "from": "Desde", "to": "Hasta", "apply": "Aplicar",
		"total.cost": "Coste", "total.calls": "Llamadas", "total.tokens": "Tokens", "total.users": "Usuarios activos",
		"total.models": "Modelos", "chart.bymodel": "Reparto por modelo", "chart.byuser": "Usuarios principales",
		"chart.daily": "Uso diario", "metric.cost": "Coste", "metric.calls": "Llamadas", "nodata": "Sin uso en este periodo.",
		"search": "Buscar", "users.search": "Nombre o correo", "col.name": "Nombre", "col.email": "Correo", "col.role": "Rol",
		"col.balance": "Saldo", "col.status": "Estado", "col.created": "Creado", "status.active": "Activo",
		"status.blocked": "Bloqueado", "users.everyone": "Todos", "prev": "Anterior", "next": "Siguiente", "page": "Página", "sort": "Ordenar",
		"order.asc": "Ascendente", "order.desc": "Descendente", "user.setbalance": "Fijar saldo", "user.topup": "Recargar",
		"user.amount": "Importe", "user.reason": "Motivo", "user.block": "Bloquear", "user.unblock": "Desbloquear",
		"user.history": "Historial de saldo", "user.recent": "Registros recientes", "user.notfound": "No existe ese usuario.",
		"col.time": "Fecha", "col.actor": "Por", "col.old": "Antes", "col.new": "Después", "save": "Guardar",
		"models.title": "Precios de modelos", "col.model": "Modelo", "col.input": "Entrada / 1M tokens",
		"col.output": "Salida / 1M tokens", "col.permsg": "Por mensaje", "models.permsghint": "vacío: cobrar por tokens",
		"models.priced": "con precio", "models.default": "precio por defecto", "models.none": "Aún no hay modelos: aparecen aquí al usarse o al ponerles precio.",
		"saved": "Guardado", "records.users": "IDs de usuario (separados por comas)", "records.models": "Modelos (separados por comas)",
		"export": "Exportar CSV", "col.user": "Usuario", "col.in": "Tokens de entrada", "col.out": "Tokens de salida", "col.cost": "Coste",
		"col.after": "Saldo después", "col.source": "Origen", "none": "Nada por aquí.", "total": "Total",
		"settings.store": "Base de datos", "settings.owui": "OpenWebUI", "configured": "configurado", "notconfigured": "sin configurar",
		"settings.function": "Función de filtro", "settings.functionhint": "Pega esta clave en la válvula api_key de la función Usage Monitor, y esta dirección en su api_endpoint (tal como OpenWebUI la alcanza).",
		"settings.reachable": "responde", "settings.unreachable": "no responde", "settings.apikey": "Clave API", "settings.noapikey": "No hay api_key (API_KEY): las llamadas de la función se rechazan.", "settings.show": "Mostrar", "settings.copy": "Copiar", "settings.copied": "Copiada",
		"settings.endpoint": "Dirección", "settings.deploy": "Formas de desplegar", "settings.deployhint": "Solo la función: la función de filtro de OpenWebUI informa aquí de cada respuesta. Delante de OpenWebUI: este servidor además controla y mide las llamadas a modelos que pasan por él. El README describe ambas.",
		"models.saveall": "Guardar todos los cambios", "models.search": "Filtrar modelos", "models.sync": "Sincronizar con la base", "models.syncall": "Sincronizar todos", "models.test": "Probar", "models.testall": "Probar todos",
		"models.export": "Exportar precios (JSON)", "models.import": "Importar precios (JSON)", "models.testing": "Probando", "models.ok": "funciona", "models.failed": "falló",
		"settings.owuihint": "La dirección y la clave de administrador de OpenWebUI (openwebui, openwebui_api_key) permiten listar los modelos.",
		"settings.currency": "Moneda", "settings.sessions": "Las sesiones duran 12 horas y terminan cuando el servidor se reinicia.",
	},
}

// language picks the page language: the lang cookie, then Accept-Language,
// then English.
func language(r *http.Request) string {
	if c, err := r.Cookie("lang"); err == nil {
		if _, ok := messages[c.Value]; ok {
			return c.Value
		}
	}
	best, bestQ := "en", -1.0
	for i, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		primary, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if _, ok := messages[primary]; !ok {
			continue
		}
		q := 1.0 - float64(i)*0.0001 // earlier wins among equals
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f - float64(i)*0.0001
			}
		}
		if q > bestQ {
			best, bestQ = primary, q
		}
	}
	return best
}

// translate returns the text of key in lang; a missing key shows itself.
func translate(lang, key string) string {
	if s, ok := messages[lang][key]; ok {
		return s
	}
	if s, ok := messages["en"][key]; ok {
		return s
	}
	return key
}
